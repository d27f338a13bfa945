//! Placeholder until the resolver lands (same API).
use super::packages::{Architecture, Package, PackageName, Relation};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageId(u32);
pub struct Universe {
    packages: Vec<(usize, Package)>,
}
impl Universe {
    pub fn new(_native: Architecture, _foreign: Vec<Architecture>) -> Self {
        Universe { packages: Vec::new() }
    }
    pub fn add(&mut self, archive: usize, packages: Vec<Package>) {
        self.packages.extend(packages.into_iter().map(|p| (archive, p)));
    }
    pub fn package(&self, id: PackageId) -> &Package {
        &self.packages[id.0 as usize].1
    }
    pub fn archive_of(&self, id: PackageId) -> usize {
        self.packages[id.0 as usize].0
    }
}
pub struct Request {
    pub packages: Vec<Requested>,
    pub priority_required: bool,
    pub essential: bool,
    pub exclude: Vec<PackageName>,
}
pub struct Requested {
    pub relation: Relation,
    pub text: String,
}
impl Requested {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(Requested { relation: crate::recipe::package_request(text)?, text: text.to_owned() })
    }
}
pub struct Resolution {
    pub chosen: Vec<Chosen>,
}
pub struct Chosen {
    pub id: PackageId,
    pub reason: Reason,
}
pub enum Reason {
    Requested(String),
    Essential,
    Priority,
    Dependency { of: PackageName, relation: String },
}
pub fn resolve(u: &Universe, _installed: &[PackageId], r: &Request) -> anyhow::Result<Resolution> {
    let mut chosen = Vec::new();
    for q in &r.packages {
        let i =
            u.packages.iter().position(|(_, p)| p.name == q.relation.name).ok_or_else(|| anyhow::anyhow!("none"))?;
        chosen.push(Chosen { id: PackageId(i as u32), reason: Reason::Requested(q.text.clone()) });
    }
    Ok(Resolution { chosen })
}
