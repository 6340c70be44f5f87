"""Layer 6: pipelines (specs under ``pipelines/``), their stages, config and runner."""

from xmodal.pipelines import stages  # noqa: F401  (registers the stages)
from xmodal.pipelines.runner import RunResult, resolve_config, run_pipeline
from xmodal.pipelines.spec import PipelineSpec, register_builtin_pipelines

register_builtin_pipelines()

__all__ = ["PipelineSpec", "RunResult", "resolve_config", "run_pipeline"]
