-- The sample target's data: a table with personal data, so the default
-- guardrails and a masking policy have something to act on.
CREATE TABLE customers (
    id     bigint PRIMARY KEY,
    name   text NOT NULL,
    email  text NOT NULL,
    phone  text
);
INSERT INTO customers VALUES
    (1, 'Ada Lovelace', 'ada@example.com', '+44 20 7946 0001'),
    (2, 'Grace Hopper', 'grace@example.com', '+1 202 555 0102'),
    (3, 'Edsger Dijkstra', 'edsger@example.com', NULL);
