//! Billing export files (FOCUS 1.0, CUR 2.0) from local paths, globs or S3.
