-- Control tables of the tenant projection. They live in the projection's base schema (the
-- connection's search_path); the read-model tables themselves live in one schema per
-- generation (`<base>_g<N>`, created by the service from src/generation.sql), so a rebuild can
-- fill a new generation while queries keep reading the active one.

CREATE TABLE generations (
    generation   integer PRIMARY KEY,
    schema_name  text NOT NULL UNIQUE,
    -- building | active | retired
    state        text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz
);

-- Exactly one row: the generation every query reads and the live consumer writes.
CREATE TABLE active_generation (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation integer NOT NULL REFERENCES generations (generation)
);
