-- Failed sign-ins are counted per username and source address, so that one source cannot
-- lock a user out everywhere; the per-username ceiling still counts every source. Rows from
-- before this migration have no source: they count towards the ceiling only.
ALTER TABLE login_failures ADD COLUMN source TEXT NOT NULL DEFAULT '';
