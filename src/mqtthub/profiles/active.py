"""The profiles ``serve`` runs with, built from its settings (reads the mapping file)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mqtthub.errors import ConfigError
from mqtthub.profiles import MqtthubProfile, Profiles
from mqtthub.profiles.base import Profile
from mqtthub.profiles.esphome import EsphomeProfile
from mqtthub.profiles.homeassistant import HomeAssistantProfile
from mqtthub.profiles.homie import HomieProfile
from mqtthub.profiles.mapping import load_mappings
from mqtthub.profiles.tasmota import TasmotaProfile

if TYPE_CHECKING:
    from mqtthub.config import Settings


def active_profiles(settings: Settings) -> Profiles | None:
    """``MQTTHUB_PROFILES`` plus ``MQTTHUB_MAPPINGS``; None for mqtthub's own convention
    alone (the writer then runs its parser directly, the fastest path).

    Raises:
        ConfigError: the mapping file cannot be read or is invalid.
    """
    names = settings.profile_names
    if names == ("mqtthub",) and settings.mappings is None:
        return None
    made: list[Profile] = []
    for name in names:
        if name == "mqtthub":
            made.append(MqtthubProfile(settings.topic_prefix))
        elif name == "tasmota":
            made.append(TasmotaProfile(settings.tasmota_zone()))
        elif name == "esphome":
            made.append(EsphomeProfile())
        elif name == "homeassistant":
            made.append(HomeAssistantProfile(settings.homeassistant_prefix))
        elif name == "homie":
            made.append(HomieProfile())
    if settings.mappings is not None:
        try:
            text = settings.mappings.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"MQTTHUB_MAPPINGS: cannot read {settings.mappings}: {exc}") from None
        made.append(load_mappings(text, source=f"MQTTHUB_MAPPINGS ({settings.mappings})"))
    return Profiles(made)
