-- A write carries the moment its client stops waiting. A statement that the server
-- gets to later (it sat in the socket of a frozen server, say) fails instead of
-- storing credentials whose requests were already answered 503. Checked once per
-- row, right before it is inserted; raising aborts the whole statement, so a batch
-- is stored entirely or not at all. query_canceled is what a statement_timeout
-- raises too: the services answer both with 503.
CREATE OR REPLACE FUNCTION kc_before_deadline(deadline timestamptz) RETURNS boolean
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF clock_timestamp() >= deadline THEN
        RAISE EXCEPTION 'statement deadline % has passed', deadline USING ERRCODE = 'query_canceled';
    END IF;
    RETURN true;
END
$$;
