"""The training engine: models, data, one training loop, run folders, grids, campaigns and reports.

Builds on the method (dprp_lib.method); imports nothing of the course.
"""
