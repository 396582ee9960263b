"""Canary: the private paho-mqtt members that devices/_paho.py overrides or reads still exist,
with the parameters it was written against. A paho upgrade that moves one fails here, not in
production, where the hub's bound on held messages would silently stop working."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices import _paho


def test_paho_is_the_version_the_fence_was_written_for():
    assert version("paho-mqtt") == _paho.PAHO_VERSION


@pytest.mark.parametrize(("name", "params"), sorted(_paho.PRIVATE_METHODS.items()))
def test_private_methods_keep_their_parameters(name, params):
    method = getattr(paho.Client, name)
    assert tuple(inspect.signature(method).parameters) == params
    # and the fence's overrides take the same ones
    for cls in (_paho.BufferedClient, _paho.PausableClient):
        if name in vars(cls):
            assert tuple(inspect.signature(vars(cls)[name]).parameters) == params


@pytest.mark.parametrize("name", _paho.PRIVATE_ATTRIBUTES)
def test_private_attributes_exist_on_a_new_client(name):
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="canary", protocol=paho.MQTTv5)
    assert hasattr(client, name)


def test_the_pause_hook_is_consulted_before_every_packet():
    class Paused(_paho.PausableClient):
        def paused(self) -> bool:
            return True

    client = Paused(CallbackAPIVersion.VERSION2, client_id="canary", protocol=paho.MQTTv5)
    # paused: paho's reader answers "nothing to read" without touching the (absent) socket
    assert client._packet_read() == paho.MQTTErrorCode.MQTT_ERR_AGAIN
