//! Cache status of a cell from the artifacts directory.

use bitgrok::store::{cell_dir, cell_status, CellStatus};

#[test]
fn status_from_directory_and_manifest() {
    let a = tempfile::tempdir().unwrap();
    let root = a.path();
    assert_eq!(cell_status(root, "k1"), CellStatus::Missing);
    std::fs::create_dir_all(cell_dir(root, "k1")).unwrap();
    assert_eq!(
        cell_status(root, "k1"),
        CellStatus::Partial,
        "no manifest yet"
    );
    let manifest = cell_dir(root, "k1").join("manifest.json");
    std::fs::write(&manifest, "{not json").unwrap();
    assert_eq!(
        cell_status(root, "k1"),
        CellStatus::Partial,
        "malformed manifest"
    );
    std::fs::write(&manifest, r#"{"status": "training"}"#).unwrap();
    assert_eq!(cell_status(root, "k1"), CellStatus::Partial);
    std::fs::write(&manifest, r#"{"status": "done", "engine_version": 1}"#).unwrap();
    assert_eq!(cell_status(root, "k1"), CellStatus::Done);
    assert_eq!(cell_status(root, "k2"), CellStatus::Missing);
    assert_eq!(cell_dir(root, "k1"), root.join("cells").join("k1"));
    assert_eq!(CellStatus::Partial.to_string(), "partial");
}
