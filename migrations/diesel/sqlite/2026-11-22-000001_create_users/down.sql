DROP TABLE lockbox_users;
DROP TABLE users;
