//! What the catalog knows is stored on its target, by kind of object, for `stats` and
//! `/metrics`.

use super::{Catalog, Result};

impl Catalog {
    /// `(kind, count, bytes)` of the objects the catalog records as stored (packs, indexes,
    /// snapshots), by the first segment of their name (`data`, `index`, `snapshots`), sorted
    /// by kind.
    pub fn objects_by_kind(&self) -> Result<Vec<(String, u64, u64)>> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT CASE instr(name, '/') WHEN 0 THEN name ELSE substr(name, 1, instr(name, '/') - 1) END AS kind, \
                 count(*), coalesce(sum(size), 0) FROM objects GROUP BY kind ORDER BY kind",
            )
            .map_err(|e| self.err(e))?;
        let rows = statement
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }
}
