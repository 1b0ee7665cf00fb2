"""Requests and rows to write: the scoring core, the BentoML service and batch rescoring."""
