-- Service accounts for the bridges (docs/integrations.md): Zigbee2MQTT and ChirpStack v4's
-- MQTT integration publish on the hub's broker with accounts of their own, and Home Assistant
-- reads the alert service's discovery configs and states with one.
-- devices/provisioning.py (SERVICE_ACLS, BridgeTopics) says what each may touch.

ALTER TABLE broker_accounts DROP CONSTRAINT broker_accounts_role_check;
ALTER TABLE broker_accounts ADD CONSTRAINT broker_accounts_role_check
    CHECK (role IN ('device', 'hub', 'alerts', 'api', 'zigbee2mqtt', 'chirpstack', 'homeassistant'));
