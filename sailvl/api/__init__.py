"""The sailvl.io/v1alpha1 API: TrainStage, CurationRun and EvalSuite as typed models.

These models are the single source of truth: the CRDs are generated from them (`sailvl crds`), the
CLI, the operator and every worker validate specs with them. Importing them never imports torch.
"""

from sailvl.api.base import API_GROUP, API_VERSION, FieldError
from sailvl.api.benchmarks import BENCHMARKS, GROUPS, PAPER_BENCHMARKS, SYNTHETIC_BENCHMARKS
from sailvl.api.common import DataRef, ModelRef, PodRuntime, Runtime, Serving, ServingRuntime
from sailvl.api.conditions import Condition, derive_phase, set_condition
from sailvl.api.curationrun import CurationRun, CurationRunSpec, CurationRunStatus, CurationStep
from sailvl.api.evalsuite import EvalSuite, EvalSuiteSpec, EvalSuiteStatus
from sailvl.api.manifest import KINDS, Document, Issue, ManifestError, load_documents, load_yaml, parse_resource
from sailvl.api.meta import ObjectMeta, Resource
from sailvl.api.trainstage import TrainStage, TrainStageSpec, TrainStageStatus

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "BENCHMARKS",
    "GROUPS",
    "KINDS",
    "PAPER_BENCHMARKS",
    "SYNTHETIC_BENCHMARKS",
    "Condition",
    "CurationRun",
    "CurationRunSpec",
    "CurationRunStatus",
    "CurationStep",
    "DataRef",
    "Document",
    "EvalSuite",
    "EvalSuiteSpec",
    "EvalSuiteStatus",
    "FieldError",
    "Issue",
    "ManifestError",
    "ModelRef",
    "ObjectMeta",
    "PodRuntime",
    "Resource",
    "Runtime",
    "Serving",
    "ServingRuntime",
    "TrainStage",
    "TrainStageSpec",
    "TrainStageStatus",
    "derive_phase",
    "load_documents",
    "load_yaml",
    "parse_resource",
    "set_condition",
]
