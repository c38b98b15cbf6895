"""The method: SVD-factored layers, the three penalties, rank cuts, compaction and deployment.

Imports nothing else of the project (torch only), so it can be read, tested and reused alone.
"""
