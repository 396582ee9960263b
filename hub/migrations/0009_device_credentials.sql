-- Broker accounts: one per provisioned device (username = device id) and one per service
-- (the hub, the alert service, the API). devices/provisioning.py keeps the broker's password
-- and ACL files, or its dynamic-security configuration, in step with this table.
--
-- The secret itself is never stored: secret_hash is Mosquitto's PBKDF2-SHA512 form
-- ("$7$iterations$salt$hash"), from which the password file is regenerated.

CREATE TABLE broker_accounts (
    username       text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9_.-]{1,64}$'),
    role           text NOT NULL CHECK (role IN ('device', 'hub', 'alerts', 'api')),
    device_id      text UNIQUE REFERENCES devices (id),
    secret_hash    text CHECK (secret_hash LIKE '$7$%'),
    provisioned_at timestamptz NOT NULL DEFAULT now(),
    rotated_at     timestamptz,
    revoked_at     timestamptz,
    -- a device account is named after its device; a service account has no device
    CHECK ((role = 'device') = (device_id IS NOT NULL)),
    CHECK (device_id IS NULL OR device_id = username),
    -- a revoked account keeps no hash, so nothing can bring its old secret back
    CHECK ((revoked_at IS NULL) = (secret_hash IS NOT NULL))
);

COMMENT ON TABLE broker_accounts IS
    'MQTT broker accounts (devices and services); secrets are stored only as Mosquitto PBKDF2-SHA512 hashes';
