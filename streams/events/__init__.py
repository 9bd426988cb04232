"""Typed events: the domain events of the simulator and the platform's own events."""

from streams.events.base import Event
from streams.events.domain import DriverPing, TripCancelled, TripCompleted, TripRequested
from streams.events.platform import (
    Alert,
    DeadLetter,
    FeatureUpdate,
    ModelVersion,
    MonitoringMetric,
    Outcome,
    Prediction,
)
from streams.events.registry import EVENT_TYPES, event_class

__all__ = [
    "EVENT_TYPES",
    "Alert",
    "DeadLetter",
    "DriverPing",
    "Event",
    "FeatureUpdate",
    "ModelVersion",
    "MonitoringMetric",
    "Outcome",
    "Prediction",
    "TripCancelled",
    "TripCompleted",
    "TripRequested",
    "event_class",
]
