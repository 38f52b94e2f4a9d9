-- The ledger is append-only in the database, not only in the code: an UPDATE or DELETE of a
-- ledger entry, or of what a payment recorded, is refused whoever runs it (a runtime role, a
-- script, an operator's typo). Retention never deletes either table. Correcting a mistake is a
-- new entry, never an edit. A superuser can still disable the triggers; `payment-service
-- reconcile` is what finds an edit made that way.

-- Why each entry exists: `message:<id>` for a `pay.order` command (its inbox identity),
-- `idempotency-key:<key>` for a keyed deposit; NULL for a deposit without a key and for rows
-- written before this column existed.
ALTER TABLE ledger_entries ADD COLUMN cause TEXT CHECK (length(cause) BETWEEN 1 AND 300);

CREATE FUNCTION refuse_ledger_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % refused: the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change();

-- A payment's recorded facts never change and the row is never deleted; columns added later
-- (e.g. what has been refunded) may still be updated.
CREATE FUNCTION refuse_payment_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
        OR (OLD.order_id, OLD.user_id, OLD.amount, OLD.transaction_id, OLD.event_id, OLD.paid_at)
           IS DISTINCT FROM (NEW.order_id, NEW.user_id, NEW.amount, NEW.transaction_id, NEW.event_id, NEW.paid_at)
    THEN
        RAISE EXCEPTION '% on payments refused: a payment is never edited or deleted', TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER payments_append_only BEFORE UPDATE OR DELETE ON payments
    FOR EACH ROW EXECUTE FUNCTION refuse_payment_change();
CREATE TRIGGER payments_no_truncate BEFORE TRUNCATE ON payments
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change();
