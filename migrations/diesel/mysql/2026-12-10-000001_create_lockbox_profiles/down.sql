DROP TABLE lockbox_profiles;
