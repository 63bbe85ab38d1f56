//! Terraform state (tfstate v4 JSON) from files, globs and S3 objects, for drift.
