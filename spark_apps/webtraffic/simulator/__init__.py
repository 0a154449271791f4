"""The website traffic simulator and its ground-truth ledger (``webtraffic simulate``)."""

from __future__ import annotations
