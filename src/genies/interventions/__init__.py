"""Interventions: one module each, plus the registry."""

from genies.interventions.registry import get_intervention, list_interventions, register_intervention

__all__ = ["get_intervention", "list_interventions", "register_intervention"]
