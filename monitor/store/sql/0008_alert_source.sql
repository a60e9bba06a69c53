-- Alerts about a source rather than an account (password_spray): the network (IPv4 /24, IPv6
-- /64) or the address the attempts came from. NULL for every other alert; a spray alert has an
-- empty account_id, its "the spray worked" follow-up both.
ALTER TABLE alerts ADD COLUMN source text;
CREATE INDEX alerts_source_ts ON alerts (source, ts DESC) WHERE source IS NOT NULL;
