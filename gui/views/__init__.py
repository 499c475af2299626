"""View plugins of the monitor; ``VIEWS`` lists the tabs in order (the banner is always shown)."""

from __future__ import annotations

from agetdaq.gui.views.alarms import AlarmsView
from agetdaq.gui.views.banner import BannerView
from agetdaq.gui.views.base import Host, View
from agetdaq.gui.views.channels import ChannelsView
from agetdaq.gui.views.debug import DebugView
from agetdaq.gui.views.event import EventView
from agetdaq.gui.views.gain import GainView
from agetdaq.gui.views.hitmap import HitmapView
from agetdaq.gui.views.rates import RatesView
from agetdaq.gui.views.runcontrol import RunControlView

VIEWS: tuple[type[View], ...] = (
    RunControlView,
    HitmapView,
    EventView,
    ChannelsView,
    GainView,
    RatesView,
    AlarmsView,
    DebugView,
)

__all__ = ["VIEWS", "BannerView", "Host", "View"]
