"""View plugins of the monitor; ``VIEWS`` lists the tabs in order (the banner is always shown)."""

from __future__ import annotations

from gui.views.alarms import AlarmsView
from gui.views.banner import BannerView
from gui.views.base import Host, View
from gui.views.channels import ChannelsView
from gui.views.event import EventView
from gui.views.gain import GainView
from gui.views.hitmap import HitmapView
from gui.views.rates import RatesView
from gui.views.runcontrol import RunControlView

VIEWS: tuple[type[View], ...] = (
    RunControlView,
    HitmapView,
    EventView,
    ChannelsView,
    GainView,
    RatesView,
    AlarmsView,
)

__all__ = ["VIEWS", "BannerView", "Host", "View"]
