-- The payment store. Money is NUMERIC (exact); the constraints below hold even when the
-- application is bypassed.

CREATE TABLE accounts (
    user_id    TEXT PRIMARY KEY CHECK (user_id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    balance    NUMERIC NOT NULL DEFAULT 0
               CHECK (balance >= 0 AND balance <= 1000000000000000 AND scale(balance) <= 2),
    created_at TIMESTAMPTZ NOT NULL
);

-- The statement of account. `position` orders entries and is the keyset cursor.
CREATE TABLE ledger_entries (
    position      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id      UUID NOT NULL UNIQUE,
    user_id       TEXT NOT NULL REFERENCES accounts (user_id),
    kind          TEXT NOT NULL CHECK (kind IN ('deposit', 'payment')),
    amount        NUMERIC NOT NULL CHECK (amount > 0 AND amount <= 1000000000000 AND scale(amount) <= 2),
    balance_after NUMERIC NOT NULL CHECK (balance_after >= 0),
    order_id      TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    CHECK ((kind = 'payment') = (order_id IS NOT NULL))
);
CREATE INDEX ledger_entries_statement ON ledger_entries (user_id, position DESC);

-- Successful payments only: the primary key makes a second debit of an order impossible.
CREATE TABLE payments (
    order_id       TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES accounts (user_id),
    amount         NUMERIC NOT NULL CHECK (amount > 0 AND amount <= 1000000000000 AND scale(amount) <= 2),
    transaction_id UUID NOT NULL UNIQUE,
    event_id       UUID NOT NULL UNIQUE,
    paid_at        TIMESTAMPTZ NOT NULL
);

-- The transactional inbox: one row per message identity ever applied (until pruned).
CREATE TABLE inbox (
    message_id TEXT PRIMARY KEY,
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX inbox_claimed_at ON inbox (claimed_at);

-- The transactional outbox. `topic` is the event kind; the publisher maps it to a topic name.
CREATE TABLE outbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic        TEXT NOT NULL CHECK (topic IN ('order.paid', 'order.payment_failed', 'pay.order.dlq')),
    key          TEXT,
    payload      BYTEA NOT NULL,
    headers      JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE dead_letters (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dead_letter_id   UUID NOT NULL UNIQUE,
    message_id       TEXT NOT NULL,
    source_topic     TEXT,
    source_partition INT,
    source_offset    BIGINT,
    reason           TEXT NOT NULL,
    detail           TEXT NOT NULL,
    payload          BYTEA NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX dead_letters_created_at ON dead_letters (created_at);

CREATE TABLE idempotency_keys (
    user_id    TEXT NOT NULL REFERENCES accounts (user_id),
    key        TEXT NOT NULL,
    amount     NUMERIC NOT NULL,
    balance    NUMERIC NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- Wakes the outbox publisher when a transaction that wrote outbox rows commits.
CREATE FUNCTION notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('payment_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox();
