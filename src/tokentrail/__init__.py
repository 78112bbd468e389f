"""tokentrail: exact token-usage and cost tracking for LLM agent systems."""

from tokentrail._types import Cost, PriceRule, Usage, UsageStatus
from tokentrail.errors import (
    AdapterError,
    BudgetExceeded,
    InvalidPriceError,
    InvalidUsageError,
    PricingError,
    StoreError,
    TokentrailError,
    UnknownModelError,
)
from tokentrail.pricing.catalog import Catalog, default_catalog, price, set_default_catalog

__version__ = "0.1.0"

__all__ = [
    "AdapterError",
    "BudgetExceeded",
    "Catalog",
    "Cost",
    "InvalidPriceError",
    "InvalidUsageError",
    "PriceRule",
    "PricingError",
    "StoreError",
    "TokentrailError",
    "UnknownModelError",
    "Usage",
    "UsageStatus",
    "__version__",
    "default_catalog",
    "price",
    "set_default_catalog",
]
