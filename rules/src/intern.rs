//! Interning: the strings a resource's findings share, handed out once per distinct value.

use std::sync::Arc;

use crate::fast::FastMap;
use crate::input::Resource;

/// The shared strings of the findings of one resource: its ARN (the subject), account, region and type.
#[derive(Clone)]
pub(crate) struct ResourceStrings {
    pub subject: Arc<str>,
    pub account_id: Arc<str>,
    pub region: Arc<str>,
    pub resource_type: Arc<str>,
}

/// Hands out one `Arc<str>` per distinct string: the accounts, regions and types of the resources with
/// findings, shared by those findings. One per thread, so the reference counts are not contended.
#[derive(Default)]
pub(crate) struct Interner<'a> {
    strings: FastMap<&'a str, Arc<str>>,
}

impl<'a> Interner<'a> {
    pub fn get(&mut self, s: &'a str) -> Arc<str> {
        self.strings.entry(s).or_insert_with(|| Arc::from(s)).clone()
    }

    /// The strings of `r`'s findings (its ARN copied once, the others interned).
    pub fn resource(&mut self, r: &'a Resource) -> ResourceStrings {
        ResourceStrings {
            subject: Arc::from(r.arn.as_str()),
            account_id: self.get(&r.account_id),
            region: self.get(&r.region),
            resource_type: self.get(&r.resource_type),
        }
    }
}
