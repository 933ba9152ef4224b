//! Which mesh's capture a node entry follows (the `mesh` key): one mesh per entry,
//! pods of other meshes left alone. Istio's rules are docs/istio-capture.md, the
//! others docs/meshes.md.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mesh {
    #[default]
    Istio,
    Kuma,
    Linkerd,
}

impl Mesh {
    pub const KEY_VALUES: [(&'static str, Mesh); 3] = [
        ("istio", Mesh::Istio),
        ("kuma", Mesh::Kuma),
        ("linkerd", Mesh::Linkerd),
    ];

    pub fn parse(text: &str) -> Option<Self> {
        super::by_keyword(&Self::KEY_VALUES, text)
    }

    pub fn name(self) -> &'static str {
        Self::KEY_VALUES
            .iter()
            .find(|(_, mesh)| *mesh == self)
            .map(|(name, _)| *name)
            .unwrap_or("istio")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meshes_parse_by_name_and_back() {
        for (name, mesh) in Mesh::KEY_VALUES {
            assert_eq!(Mesh::parse(name), Some(mesh));
            assert_eq!(mesh.name(), name);
        }
        assert_eq!(Mesh::parse("consul"), None);
        assert_eq!(Mesh::parse("Kuma"), None);
        assert_eq!(Mesh::default(), Mesh::Istio);
    }
}
