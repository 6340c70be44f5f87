"""data/scenes"""
