package redisstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/internal/fields"
)

// CreateUser stores a new user. The record is written first (only if its
// id is new), then the username is claimed, then its skeleton
// (credential.Skeleton: a look-alike of an existing name is refused), then
// the id joins the user set; a lost race for the name or the skeleton
// rolls back what was written. A name or skeleton key left pointing at a
// user record that no longer exists (an interrupted DeleteUser) is taken
// over.
func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	if u.ID == "" {
		return errors.New("redisstore: create user: empty id")
	}
	roles, err := fields.JoinRoles(u.Roles)
	if err != nil {
		return wrap("create user", err)
	}
	created, err := createUser.Run(ctx, s.rdb, []string{s.userKey(u.ID)},
		u.ID, u.Username, u.PasswordHash, roles, flag(u.Disabled),
		fields.Millis(u.CreatedAt), fields.Millis(u.UpdatedAt)).Int()
	if err != nil {
		return wrap("create user", err)
	}
	if created == 0 {
		return store.ErrConflict
	}
	name := s.nameKey(u.Username)
	err = s.claim(ctx, name, u.ID, store.ErrConflict)
	if err == nil {
		if err = s.indexLooks(ctx); err == nil {
			if err = s.claim(ctx, s.lookKey(u.Username), u.ID, store.ErrLookAlike); err != nil {
				if rerr := compareAndSet.Run(ctx, s.rdb, []string{name}, u.ID, "").Err(); rerr != nil {
					err = errors.Join(err, wrap("create user: roll back", rerr))
				}
			}
		}
	}
	if err != nil {
		if derr := s.rdb.Del(ctx, s.userKey(u.ID)).Err(); derr != nil {
			return errors.Join(err, wrap("create user: roll back", derr))
		}
		return err
	}
	if err := s.rdb.SAdd(ctx, s.usersKey(), u.ID).Err(); err != nil {
		return wrap("create user", err)
	}
	return nil
}

// claim points key (a username's or a skeleton's) at uid, or returns
// conflict if it belongs to an existing user.
func (s *Store) claim(ctx context.Context, key, uid string, conflict error) error {
	for range 3 {
		ok, err := s.rdb.SetNX(ctx, key, uid, 0).Result()
		if err != nil {
			return wrap("create user: claim name", err)
		}
		if ok {
			return nil
		}
		owner, err := s.rdb.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			continue // released meanwhile
		}
		if err != nil {
			return wrap("create user: claim name", err)
		}
		n, err := s.rdb.Exists(ctx, s.userKey(owner)).Result()
		if err != nil {
			return wrap("create user: claim name", err)
		}
		if n == 1 {
			return conflict
		}
		// Stale: the owner is gone. Take the name over unless someone
		// else just did.
		done, err := compareAndSet.Run(ctx, s.rdb, []string{key}, owner, uid).Int()
		if err != nil {
			return wrap("create user: claim name", err)
		}
		if done == 1 {
			return nil
		}
	}
	return conflict
}

// indexLooks gives the users created before skeleton keys existed (an
// older tokend) theirs, once per Redis: the first CreateUser that finds no
// marker key indexes every user (SET NX: concurrent runs agree), then sets
// the marker. Later calls cost one EXISTS.
func (s *Store) indexLooks(ctx context.Context) error {
	marker := s.prefix + "looks-indexed"
	n, err := s.rdb.Exists(ctx, marker).Result()
	if err != nil {
		return wrap("create user: skeleton index", err)
	}
	if n == 1 {
		return nil
	}
	users, err := s.ListUsers(ctx)
	if err != nil {
		return err
	}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, u := range users {
			p.SetNX(ctx, s.lookKey(u.Username), u.ID, 0)
		}
		p.Set(ctx, marker, "1", 0)
		return nil
	})
	if err != nil {
		return wrap("create user: skeleton index", err)
	}
	return nil
}

// User returns the user with the id, or ErrNotFound.
func (s *Store) User(ctx context.Context, id string) (store.User, error) {
	if id == "" {
		return store.User{}, store.ErrNotFound
	}
	v, err := s.rdb.Get(ctx, s.userKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return store.User{}, store.ErrNotFound
	}
	if err != nil {
		return store.User{}, wrap("user", err)
	}
	u, err := decodeUser(v)
	if err != nil {
		return store.User{}, wrap("user "+id, err)
	}
	return u, nil
}

// UserByName returns the user with the username, compared
// case-insensitively, or ErrNotFound.
func (s *Store) UserByName(ctx context.Context, username string) (store.User, error) {
	id, err := s.rdb.Get(ctx, s.nameKey(username)).Result()
	if errors.Is(err, redis.Nil) {
		return store.User{}, store.ErrNotFound
	}
	if err != nil {
		return store.User{}, wrap("user by name", err)
	}
	u, err := s.User(ctx, id)
	if err != nil {
		return store.User{}, err
	}
	if !strings.EqualFold(u.Username, username) {
		return store.User{}, store.ErrNotFound // a stale name key
	}
	return u, nil
}

// ListUsers returns every user, ordered by username.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	ids, err := s.rdb.SMembers(ctx, s.usersKey()).Result()
	if err != nil {
		return nil, wrap("list users", err)
	}
	cmds := make([]*redis.StringCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Get(ctx, s.userKey(id))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, wrap("list users", err)
	}
	users := make([]store.User, 0, len(ids))
	for i, c := range cmds {
		v, err := c.Result()
		if errors.Is(err, redis.Nil) {
			continue // an id left by an interrupted CreateUser or DeleteUser
		}
		if err != nil {
			return nil, wrap("list users", err)
		}
		u, err := decodeUser(v)
		if err != nil {
			return nil, wrap("list users: user "+ids[i], err)
		}
		users = append(users, u)
	}
	sortUsers(users)
	return users, nil
}

// sortUsers orders users by lower-cased username, then id.
func sortUsers(users []store.User) {
	slices.SortFunc(users, func(a, b store.User) int {
		if c := strings.Compare(strings.ToLower(a.Username), strings.ToLower(b.Username)); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// UpdateUser replaces the user's password hash and roles and sets
// UpdatedAt; the other fields are ignored (SetUserDisabled changes
// Disabled). ErrNotFound if there is no such user.
func (s *Store) UpdateUser(ctx context.Context, u store.User) error {
	if u.ID == "" {
		return store.ErrNotFound
	}
	roles, err := fields.JoinRoles(u.Roles)
	if err != nil {
		return wrap("update user", err)
	}
	done, err := updateUser.Run(ctx, s.rdb, []string{s.userKey(u.ID)},
		u.PasswordHash, roles, fields.Millis(u.UpdatedAt)).Int()
	if err != nil {
		return wrap("update user", err)
	}
	if done == 0 {
		return store.ErrNotFound
	}
	return nil
}

// SetUserDisabled disables the user, ending every session (reason
// user_disabled) by the user's not-before time in O(1), or re-enables it;
// either way UpdatedAt = now.
func (s *Store) SetUserDisabled(ctx context.Context, id string, disabled bool, now time.Time) error {
	if id == "" {
		return store.ErrNotFound
	}
	n, err := setUserDisabled.Run(ctx, s.rdb, []string{s.userKey(id)},
		flag(disabled), fields.Millis(fields.NowOr(now)), store.ReasonUserDisable).Int()
	if err != nil {
		return wrap("set user disabled", err)
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// DeleteUser deletes the user and its sessions hash (one script), then
// releases the username.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	if id == "" {
		return store.ErrNotFound
	}
	name, err := deleteUser.Run(ctx, s.rdb, []string{s.userKey(id), s.sessionsKey(id)}).Text()
	if errors.Is(err, redis.Nil) {
		// Finish an interrupted deletion, if that is what this is.
		if err := s.rdb.SRem(ctx, s.usersKey(), id).Err(); err != nil {
			return wrap("delete user", err)
		}
		return store.ErrNotFound
	}
	if err != nil {
		return wrap("delete user", err)
	}
	if err := compareAndSet.Run(ctx, s.rdb, []string{s.nameKey(name)}, id, "").Err(); err != nil {
		return wrap("delete user: release name", err)
	}
	if err := compareAndSet.Run(ctx, s.rdb, []string{s.lookKey(name)}, id, "").Err(); err != nil {
		return wrap("delete user: release name", err)
	}
	if err := s.rdb.SRem(ctx, s.usersKey(), id).Err(); err != nil {
		return wrap("delete user", err)
	}
	return nil
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
