-- Tag compliance per day, account and resource type: what the newest rules evaluation of each UTC day found
-- (an evaluation replaces the rows of its day). The weekly report compares the weeks' last days.

CREATE TABLE compliance_days (
    day           TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resources     BIGINT NOT NULL,
    in_scope      BIGINT NOT NULL,
    compliant     BIGINT NOT NULL,
    PRIMARY KEY (day, account_id, resource_type)
);
