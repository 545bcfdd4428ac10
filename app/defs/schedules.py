"""Schedules and sensors of the code location. Their definitions live in the top-level
``schedules/`` package (the design card keeps that folder); this module is where the roof
loads them, so every concern of the code location has one module under ``app/defs``."""

from schedules import build_schedules, build_sensors

__all__ = ["build_schedules", "build_sensors"]
