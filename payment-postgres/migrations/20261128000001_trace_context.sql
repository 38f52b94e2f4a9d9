-- W3C trace context (issue 21): the `traceparent`/`tracestate` a command came with, stored with
-- its inbox claim, and the context its outcome event continues (the span of applying the
-- command), stored with the outbox row so a re-publication after a restart carries the same
-- trace. Nullable: a command without a traceparent has none, and rows written before this
-- migration keep none.

ALTER TABLE inbox
    ADD COLUMN traceparent TEXT CHECK (char_length(traceparent) = 55),
    ADD COLUMN tracestate  TEXT CHECK (octet_length(tracestate) <= 512);

ALTER TABLE outbox
    ADD COLUMN traceparent TEXT CHECK (char_length(traceparent) = 55),
    ADD COLUMN tracestate  TEXT CHECK (octet_length(tracestate) <= 512);
