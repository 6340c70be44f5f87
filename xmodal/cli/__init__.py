"""Layer 7: the ``xmodal`` command line."""
