//! Papers' results beside ours: each module holds one paper's published numbers and
//! says, claim by claim, whether our runs show the same shape.

pub mod chandak;
pub mod ghalib;
pub mod sahni;
pub mod shreya;
pub mod thesis;

use crate::experiment::profile::{Profile, Reproduction};
use crate::record::RunRecord;

/// The section of the paper a profile reproduces (`reproduces = ...`), from its runs.
pub fn reproduction(profile: &Profile, records: &[RunRecord]) -> Option<String> {
    Some(match profile.reproduces? {
        Reproduction::ShreyaTables1To3 => shreya::tables_1_to_3(records),
        Reproduction::ShreyaTable4 => shreya::table_4(records),
        Reproduction::ShreyaTable5 => shreya::table_5(records),
        Reproduction::GhalibWeb => ghalib::section(records),
        Reproduction::Sahni => sahni::section(records),
        Reproduction::ThesisTable1_1 => thesis::section(records),
    })
}
