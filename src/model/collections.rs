//! Mappings, lists and structures built from [`Scalar`] values.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::scalar::{Scalar, P};

/// A mapping with scalar keys whose duplicate keys are an error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UniqueMap<K, V>(pub BTreeMap<K, V>);

impl<K, V> Default for UniqueMap<K, V> {
    fn default() -> Self {
        UniqueMap(BTreeMap::new())
    }
}

struct UniqueMapVisitor<K, V>(PhantomData<(K, V)>);

impl<'de, K, V> Visitor<'de> for UniqueMapVisitor<K, V>
where
    K: Scalar + Ord + fmt::Debug,
    V: Deserialize<'de>,
{
    type Value = UniqueMap<K, V>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(UniqueMap::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut result = BTreeMap::new();
        while let Some(P(key)) = map.next_key::<P<K>>()? {
            let value = map.next_value::<V>()?;
            if result.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "key {key:?} appears twice: keep one"
                )));
            }
            result.insert(key, value);
        }
        Ok(UniqueMap(result))
    }
}

impl<'de, K, V> Deserialize<'de> for UniqueMap<K, V>
where
    K: Scalar + Ord + fmt::Debug,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(UniqueMapVisitor(PhantomData))
    }
}

/// A list of scalars; a null value is an empty list.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct List<T>(pub Vec<T>);

struct ListVisitor<T>(PhantomData<T>);

impl<'de, T: Scalar> Visitor<'de> for ListVisitor<T> {
    type Value = List<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a list of {}", T::EXPECTED)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(List(Vec::new()))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(P(item)) = seq.next_element::<P<T>>()? {
            items.push(item);
        }
        Ok(List(items))
    }
}

impl<'de, T: Scalar> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(ListVisitor(PhantomData))
    }
}

/// Implements `Deserialize` for a structure through a visitor that accepts a mapping or
/// an empty value (an empty file is an empty structure).
macro_rules! struct_deserialize {
    ($ty:ty, $name:literal, $visit:path) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct StructVisitor;

                impl<'de> serde::de::Visitor<'de> for StructVisitor {
                    type Value = $ty;

                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str($name)
                    }

                    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                        Ok(<$ty>::default())
                    }

                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<Self::Value, A::Error> {
                        $visit(map)
                    }
                }

                deserializer.deserialize_map(StructVisitor)
            }
        }
    };
}

pub(crate) use struct_deserialize;
