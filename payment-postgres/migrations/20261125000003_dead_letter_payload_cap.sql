-- A dead letter keeps at most the first 64 KiB of the original message (the core's
-- MAX_DEAD_LETTER_PAYLOAD_BYTES). When it was cut, the original size is kept here; NULL means
-- `payload` is the whole message.
ALTER TABLE dead_letters
    ADD COLUMN payload_original_bytes BIGINT CHECK (payload_original_bytes > octet_length(payload));
