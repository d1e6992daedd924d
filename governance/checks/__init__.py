"""The registered checks, one module per concern.

Importing this package registers every check; later concerns only add modules.
"""

from governance.checks import candidates, carbon, data, evaluation_integrity, exposure, fairness, minimization, off_policy, privacy, quality

__all__ = ["candidates", "carbon", "data", "evaluation_integrity", "exposure", "fairness", "minimization", "off_policy", "privacy", "quality"]
