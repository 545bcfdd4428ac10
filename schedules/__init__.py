"""Schedules and sensors: the frequent incremental sync, the nightly reconciliation, and
the sensors that launch resyncs after a failed sync or when reconciliation opens findings
a push can fix. Everything here is data Dagster evaluates at tick time; nothing calls an
external system while definitions load."""

from schedules.schedules import build_schedules
from schedules.sensors import build_sensors

__all__ = ["build_schedules", "build_sensors"]
