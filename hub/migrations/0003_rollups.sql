-- Hourly and daily rollups of scalar readings, bucketed in the facility's own time zone
-- (a "day" in Qingdao starts at 00:00 Asia/Shanghai, not at 00:00 UTC). The Apache
-- edition of TimescaleDB has no continuous aggregates, so the hub computes these itself.

CREATE TABLE readings_hourly (
    device_id text             NOT NULL,
    metric    text             NOT NULL,
    bucket    timestamptz      NOT NULL,
    n         bigint           NOT NULL,
    vmin      double precision NOT NULL,
    vmax      double precision NOT NULL,
    vsum      double precision NOT NULL,
    PRIMARY KEY (device_id, metric, bucket)
);

CREATE TABLE readings_daily (
    device_id text             NOT NULL,
    metric    text             NOT NULL,
    day       date             NOT NULL,
    bucket    timestamptz      NOT NULL,
    n         bigint           NOT NULL,
    vmin      double precision NOT NULL,
    vmax      double precision NOT NULL,
    vsum      double precision NOT NULL,
    PRIMARY KEY (device_id, metric, day)
);

-- Watermarks and last runs of the hub's scheduled jobs, so that missed runs are visible.
CREATE TABLE jobs (
    name       text PRIMARY KEY,
    watermark  timestamptz,
    last_run   timestamptz,
    last_ok    timestamptz,
    last_error text,
    detail     jsonb
);
