-- A third verdict, benign: the alert read the events right, but what happened is allowed (a
-- known shared device, a head of year covering a class). Counted apart from false positives,
-- so the false-positive rate measures only the detector's mistakes.

ALTER TABLE alerts DROP CONSTRAINT IF EXISTS alerts_verdict_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_verdict_check
    CHECK (verdict IN ('true_positive', 'false_positive', 'benign'));
ALTER TABLE alert_verdict_totals DROP CONSTRAINT IF EXISTS alert_verdict_totals_verdict_check;
ALTER TABLE alert_verdict_totals ADD CONSTRAINT alert_verdict_totals_verdict_check
    CHECK (verdict IN ('true_positive', 'false_positive', 'benign'));
