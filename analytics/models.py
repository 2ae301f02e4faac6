"""Evaluation analytics: hourly rollups. Filled by the analytics issue; no writes per evaluation."""
