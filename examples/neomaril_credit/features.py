"""Feature code shared by the credit model's scoring (an extra file of the upload)."""

FIELDS = ("income", "debt", "age", "late_payments")


def to_features(applicant):
    missing = [name for name in FIELDS if name not in applicant]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    income = max(float(applicant["income"]), 1.0)
    return [float(applicant["debt"]) / income, float(applicant["age"]) / 100.0,
            float(applicant["late_payments"])]
