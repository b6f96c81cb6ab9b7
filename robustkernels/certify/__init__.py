"""Sound certification: interval bounds (IBP), CROWN-IBP and certified accuracy, over exactly the
layers whose semantics the bound code knows; everything else is refused by name
(:class:`NotBoundable`)."""

from .accuracy import CertifiedReport, certified_accuracy
from .crown import BOUND_METHODS, bound_method, crown_ibp_margins, margin_bounds
from .graph import SUPPORTED, NotBoundable, model_steps
from .ibp import interval_bounds, margin_lower_bounds

__all__ = ["BOUND_METHODS", "SUPPORTED", "CertifiedReport", "NotBoundable", "bound_method", "certified_accuracy",
           "crown_ibp_margins", "interval_bounds", "margin_bounds", "margin_lower_bounds", "model_steps"]
