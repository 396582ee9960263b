-- Foreign addresses of registered devices, for the adapters (docs/integrations.md): a Zigbee
-- device's Zigbee2MQTT friendly name and/or IEEE address, a LoRaWAN device's DevEUI. An
-- address belongs to one device at a time; values are stored in the form the adapters look
-- them up by (IEEE and DevEUI in lower-case hex).

CREATE TABLE device_aliases (
    scheme    text NOT NULL CHECK (scheme IN ('zigbee_name', 'zigbee_ieee', 'lorawan_dev_eui')),
    value     text NOT NULL,
    device_id text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    PRIMARY KEY (scheme, value),
    CHECK (scheme <> 'zigbee_ieee' OR value ~ '^0x[0-9a-f]{16}$'),
    CHECK (scheme <> 'lorawan_dev_eui' OR value ~ '^[0-9a-f]{16}$'),
    CHECK (scheme <> 'zigbee_name' OR length(value) BETWEEN 1 AND 200)
);
CREATE INDEX device_aliases_device ON device_aliases (device_id);
