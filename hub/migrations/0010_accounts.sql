-- People who use the API and pages: accounts, what each may see, sessions and failed logins.
-- Authorisation is computed from these rows on every request (api/auth.py); nothing about
-- scope lives in a token.

CREATE TABLE accounts (
    id            bigserial   PRIMARY KEY,
    username      text        NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.@-]{3,64}$'),
    display_name  text        NOT NULL DEFAULT '' CHECK (length(display_name) <= 200),
    -- admin: the deployment's operator, every facility; staff: care workers and managers of
    -- their facilities and the family care beds those supervise; family: linked residents
    -- only; regulator: read-only records and aggregates of their districts, no raw vitals.
    role          text        NOT NULL CHECK (role IN ('admin', 'staff', 'family', 'regulator')),
    password_hash text        NOT NULL,  -- argon2id, PHC string
    language      text        NOT NULL DEFAULT 'zh' CHECK (language IN ('zh', 'en')),
    -- Created by `ankang demo` with a published password; `ankang api` refuses to start
    -- while an enabled demo account exists.
    demo          boolean     NOT NULL DEFAULT false,
    disabled      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE account_facilities (
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    facility_id text   NOT NULL REFERENCES facilities (id) ON DELETE CASCADE,
    PRIMARY KEY (account_id, facility_id)
);

CREATE TABLE account_residents (
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    resident_id text   NOT NULL REFERENCES residents (id) ON DELETE CASCADE,
    PRIMARY KEY (account_id, resident_id)
);

CREATE TABLE account_districts (
    account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    district   text   NOT NULL CHECK (length(district) BETWEEN 1 AND 200),
    PRIMARY KEY (account_id, district)
);

-- Opaque bearer tokens: only their SHA-256 is stored, so a leaked table is no key.
CREATE TABLE sessions (
    token_sha256 bytea       PRIMARY KEY,
    account_id   bigint      NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- pages send this back in a header on every change, so a cookie alone cannot act (CSRF)
    csrf         text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Failed logins, per username and per client address, for the rate limit. Old rows are
-- deleted as new ones are written.
CREATE TABLE login_failures (
    at       timestamptz NOT NULL DEFAULT now(),
    username text        NOT NULL,
    client   text        NOT NULL
);
CREATE INDEX login_failures_username ON login_failures (username, at);
CREATE INDEX login_failures_client ON login_failures (client, at);
