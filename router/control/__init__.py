"""Config sources (file watch, control-plane pull, admin push), reloads, last known good."""

from router.control.plane import ControlPlane
from router.control.startup import Start, choose_start

__all__ = ["ControlPlane", "Start", "choose_start"]
