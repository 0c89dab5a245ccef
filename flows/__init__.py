"""Prefect orchestration and the `spin-to-mesh` command line (no maths lives here).

Importing this package does not import Prefect: only the flow modules need it (extra `flows`).
"""
