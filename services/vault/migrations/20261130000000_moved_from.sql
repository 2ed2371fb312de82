-- A secret made by moving a one-time secret remembers which one, so a retried move (the first
-- answer was lost) answers the same instead of "already taken".
ALTER TABLE secrets ADD COLUMN moved_from UUID;
