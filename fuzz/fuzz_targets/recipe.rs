//! Recipes (`recipes/*.toml`): TOML, then every typed value (names, paths, modes, owners,
//! URLs, digests, formats) and the checks across them.
#![no_main]

use std::path::Path;

use candidate::recipe::Recipe;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(recipe) = Recipe::parse(Path::new("recipes/fuzz.toml"), data.to_vec()) {
        // What later stages derive file names from.
        let _ = (recipe.proxmox_name(), recipe.dist_name());
    }
});
