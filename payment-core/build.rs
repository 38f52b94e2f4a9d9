//! Generates `store_contract_tests!` from the contract tests themselves: every
//! `pub async fn NAME<F: StoreFactory>(factory: &F)` in the contract's files becomes one
//! `#[test]` in each store that runs the suite, so a contract test cannot be written and left out.

use std::fmt::Write as _;
use std::path::PathBuf;

/// The contract's files: `contract.rs` re-exports the tests of the others.
const CONTRACT: [&str; 2] = ["src/testing/contract.rs", "src/testing/contract_refunds.rs"];

fn main() {
    let mut source = String::new();
    for file in CONTRACT {
        println!("cargo:rerun-if-changed={file}");
        source += &std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {file}: {e}"));
    }
    let names: Vec<&str> = source
        .lines()
        .filter_map(|line| line.strip_prefix("pub async fn "))
        .filter_map(|rest| rest.split_once("<F: StoreFactory>(factory: &F)").map(|(name, _)| name))
        .collect();
    assert!(names.len() >= 10, "{CONTRACT:?}: found only {} contract tests; did their signature change?", names.len());
    let mut tests = String::new();
    for name in &names {
        let _ = writeln!(
            tests,
            "        #[test]\n        fn {name}() {{\n            let factory = $factory;\n            \
             $crate::testing::block_on($crate::testing::contract::{name}(&factory));\n        }}"
        );
    }
    let generated = format!(
        "/// One `#[test]` per contract test of [`crate::testing::contract`] ({count} of them, listed by\n\
         /// the build script from the functions themselves), run against the stores `$factory` makes.\n\
         #[macro_export]\n\
         macro_rules! store_contract_tests {{\n    ($factory:expr) => {{\n{tests}    }};\n}}\n",
        count = names.len()
    );
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_else(|| panic!("OUT_DIR is unset")));
    std::fs::write(out.join("store_contract_tests.rs"), generated).unwrap_or_else(|e| panic!("write: {e}"));
}
