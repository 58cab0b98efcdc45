"""Variants of lnlib.cuda's kernels, kept apart from the production kernels until measured faster (README.md)."""
