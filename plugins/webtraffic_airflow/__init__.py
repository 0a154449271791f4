"""Airflow side of webtraffic: launchers of the streaming apps, the supervisor and its operator.

Airflow puts ``plugins/`` on ``sys.path``, so DAG files import ``webtraffic_airflow.<module>``.
Every module here is cheap to import (no I/O, heavy libraries imported where they are used).
"""
