//! The System Locality Information Table (signature `SLIT`).
//!
//! After the 36-byte header: the number of localities `N` (`u64`, offset 36), then an
//! `N`×`N` byte matrix (offset 44) whose entry `[i * N + j]` is the relative distance from
//! locality (proximity domain) `i` to `j`. The distance of a locality to itself is 10;
//! other distances must be greater than 10, 255 meaning unreachable; 0..=9 are reserved.
//! The matrix need not be symmetric: asymmetry is reported, not rejected.

use super::sdt::Sdt;
use super::{AcpiError, Signature, u64_at};

/// Offset of the distance matrix.
pub const SLIT_MATRIX_OFFSET: usize = 44;
/// Distance of a locality to itself.
pub const LOCAL_DISTANCE: u8 = 10;
/// Distance meaning "unreachable".
pub const UNREACHABLE_DISTANCE: u8 = 255;

/// A validated SLIT: a borrowed `N`×`N` matrix.
#[derive(Debug, Clone, Copy)]
pub struct Slit<'a> {
    localities: usize,
    matrix: &'a [u8],
    symmetric: bool,
}

impl<'a> Slit<'a> {
    /// Parses and validates a table, which must have signature `SLIT`: `N >= 1`,
    /// `44 + N*N <= length`, diagonal entries 10, off-diagonal entries above 10.
    pub fn parse(table: &Sdt<'a>) -> Result<Self, AcpiError> {
        table.expect(Signature::SLIT, SLIT_MATRIX_OFFSET as u32)?;
        let bytes = table.bytes();
        let count = u64_at(bytes, 36);
        let bad_count = AcpiError::SlitBadLocalityCount {
            count,
            table_length: table.length(),
        };
        let n = usize::try_from(count).map_err(|_| bad_count)?;
        let matrix = n
            .checked_mul(n)
            .filter(|_| n > 0)
            .and_then(|len| bytes.get(SLIT_MATRIX_OFFSET..)?.get(..len))
            .ok_or(bad_count)?;
        let mut symmetric = true;
        for (index, &value) in matrix.iter().enumerate() {
            let (from, to) = (index / n, index % n);
            if from == to {
                if value != LOCAL_DISTANCE {
                    return Err(AcpiError::SlitBadDiagonal {
                        locality: from,
                        value,
                    });
                }
            } else {
                if value <= LOCAL_DISTANCE {
                    return Err(AcpiError::SlitBadDistance { from, to, value });
                }
                if matrix.get(to * n + from) != Some(&value) {
                    symmetric = false;
                }
            }
        }
        Ok(Self {
            localities: n,
            matrix,
            symmetric,
        })
    }

    /// The number of localities `N`.
    pub fn localities(&self) -> usize {
        self.localities
    }

    /// The distance from locality `from` to `to`, or `None` if either is `>= N`.
    pub fn distance(&self, from: usize, to: usize) -> Option<u8> {
        if from >= self.localities || to >= self.localities {
            return None;
        }
        self.matrix
            .get(from.checked_mul(self.localities)?.checked_add(to)?)
            .copied()
    }

    /// Whether `distance(i, j) == distance(j, i)` for all `i`, `j`.
    pub fn is_symmetric(&self) -> bool {
        self.symmetric
    }
}
