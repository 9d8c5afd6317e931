"""Graph passes: the pass contract, the pass manager, and the compile pipeline."""

from fc.passes.infra import FusionPass, FusionRule, Pass, PassManager, PassReport, PassResult

__all__ = ["FusionPass", "FusionRule", "Pass", "PassManager", "PassReport", "PassResult"]
